"""cosign-compatible image signatures: the simple signing payload, its manifest, signing through a
signer (KMS lives outside the core) and verification. Imports readback and everything below it.
"""
