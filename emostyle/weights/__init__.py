"""The weights registry's parts: the table of entries (`table`), checks of files against it
(`integrity`), the download sources (`sources`), the cache with `path`, `fetch`, `verify` and
the record of used files (`cache`), and the `emostyle weights` commands (`cli`).

The public API is `emostyle.registry`; these modules are its implementation.
"""
