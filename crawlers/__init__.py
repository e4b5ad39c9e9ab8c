"""Risk Radar crawlers: Scrapy spiders, one per source, and the pipelines that store what they yield."""
