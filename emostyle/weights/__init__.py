"""The weights registry's parts: the table of entries (`table`), checks of files against it
(`integrity`), the download sources (`sources`) and the `emostyle weights` commands (`cli`).

The public API is `emostyle.registry`; these modules are its implementation.
"""
