"""What a blob is read from: sources that open at a byte offset, their identities, ranged reads.
Imports only the floor (errors, limits).
"""
