"""A Docker engine with no container network, and the images the container tests run, all built
from package registries alone (no image registry): see ``engine`` and ``images``."""
