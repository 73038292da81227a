"""The upload engine: part plans and buffers, the pipelined reader, attempts, resume, the transfer loop.
Imports the floor, sources, oci and ecr.
"""
