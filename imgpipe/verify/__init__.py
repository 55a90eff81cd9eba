"""Tests against a fresh boot of the captured image, before anything is published: the
built-in checks that the seal generalized the machine (identity.py), and the spec's own
testinfra files and Ansible plays (imagetests.py)."""
