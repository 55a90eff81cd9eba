"""imgpipe: bake machine images from a YAML spec and existing Ansible roles."""

__version__ = "0.1.0"
