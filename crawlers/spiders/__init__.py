"""One spider per source, each in a file named after its ``config/sources/<name>.yml``."""
