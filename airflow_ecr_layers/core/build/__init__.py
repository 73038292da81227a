"""Images built from files: reproducible tar layers, files grouped into layers, the image config.
Imports push and everything below it.
"""
