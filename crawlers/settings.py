"""Scrapy settings built from Risk Radar's settings: politeness, limits and the pipeline chain."""

from __future__ import annotations

from typing import Any

from radar.settings import Settings, get_settings


def scrapy_settings(settings: Settings | None = None, mirror: str | None = None) -> dict[str, Any]:
    s = settings or get_settings()
    values: dict[str, Any] = {
        "BOT_NAME": "riskradar",
        "USER_AGENT": s.full_user_agent,
        "ROBOTSTXT_OBEY": bool(s.robots_obey),
        "CONCURRENT_REQUESTS": 16,
        "CONCURRENT_REQUESTS_PER_DOMAIN": int(s.concurrent_requests_per_domain),
        "DOWNLOAD_DELAY": float(s.download_delay),
        "AUTOTHROTTLE_ENABLED": True,
        "AUTOTHROTTLE_START_DELAY": max(float(s.download_delay), 0.1),
        "AUTOTHROTTLE_TARGET_CONCURRENCY": 1.0,
        "RETRY_ENABLED": True,
        "RETRY_TIMES": int(s.http_retries),
        "RETRY_HTTP_CODES": [429, 500, 502, 503, 504, 522, 524, 408],
        "DOWNLOAD_TIMEOUT": int(s.http_timeout),
        "DOWNLOAD_MAXSIZE": int(s.max_response_bytes),
        "DOWNLOAD_WARNSIZE": int(s.max_response_bytes) // 2,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": s.log_level,
        "ITEM_PIPELINES": {
            "crawlers.pipelines.ValidatePipeline": 300,
            "crawlers.pipelines.DedupePipeline": 400,
            "crawlers.pipelines.StorePipeline": 500,
        },
        # Incremental re-crawls: Scrapy's HTTP cache stores each response with its ETag / Last-Modified
        # and revalidates it on the next run, so an unchanged page costs a 304 and no body.
        "HTTPCACHE_ENABLED": True,
        "HTTPCACHE_POLICY": "crawlers.cache.RevalidatingPolicy",
        "HTTPCACHE_DIR": str(s.data_path / "httpcache"),
        "HTTPCACHE_GZIP": True,
        "DOWNLOADER_MIDDLEWARES": {
            # Scrapy's offsite and robots.txt filters, in their places, reporting what they drop on the run.
            "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
            "crawlers.middleware.ReportingOffsiteMiddleware": 50,
            "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
            "crawlers.middleware.ReportingRobotsTxtMiddleware": 100,
            # Network byte counts sit below the cache, so replayed cached bodies do not count.
            "crawlers.middleware.NetworkStatsMiddleware": 950,
        },
        "SPIDER_MODULES": ["crawlers.spiders"],
        "NEWSPIDER_MODULE": "crawlers.spiders",
    }
    if mirror:
        values.update({
            "RADAR_MIRROR": mirror,
            "DOWNLOAD_HANDLERS": {
                "http": "crawlers.middleware.MirrorDownloadHandler",
                "https": "crawlers.middleware.MirrorDownloadHandler",
            },
            "DOWNLOAD_DELAY": 0,
            "AUTOTHROTTLE_ENABLED": False,
            "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
            "RETRY_TIMES": min(int(s.http_retries), 1),
        })
    return values
