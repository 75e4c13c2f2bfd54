"""Developer tools shared by tests and benchmarks (not used by the pipeline itself).

``cms_layouts`` writes full real reference tables back out in the exact CMS file layouts, so the
parsers can be exercised at production size without shipping the multi-megabyte CMS files.
"""
