"""Image archives read in place: tar members, gzip streams, OCI layouts and docker-save tarballs.
Imports the floor, sources and oci; yields image plans.
"""
