"""What goes into a registry: descriptors and manifests, the layers of an artifact, image plans.
Imports the floor and sources.
"""
