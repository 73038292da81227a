"""Talking to ECR: one method per call, image references, retries, the fast UploadLayerPart, repositories.
Imports the floor and oci.
"""
