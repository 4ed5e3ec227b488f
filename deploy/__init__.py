"""Running the services: the local dev stack (devstack.py), the container healthcheck, the image."""
