"""Reading back out of ECR: layer downloads, pulls into files, copies between repositories.
Imports push (a copy is a push) and everything below it.
"""
