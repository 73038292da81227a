"""Pushes of whole artifacts and images: digests learnt before reading, layers in parallel, tags last.
Imports the engine and everything below it.
"""
