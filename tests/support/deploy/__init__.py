"""Offline checks of the deployment files (Dockerfile, docker-compose.yml, k8s/) against the code.

`code` discovers what the code says (packages, settings, topics, the image's stages), `manifests` reads what
the deployment files say, and `checks` compares the two as pure functions returning a list of problems — so
the unit tests can feed them deliberately drifted inputs, and the component tests the real files.
"""
