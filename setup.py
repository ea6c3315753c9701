"""Shim for pip < 21.3 and setuptools < 64, which need a setup.py for editable installs
(Python 3.6's last pip and setuptools). Everything is declared in setup.cfg."""

from setuptools import setup

setup()
