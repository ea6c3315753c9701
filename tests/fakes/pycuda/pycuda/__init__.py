"""Fake pycuda (only ``pycuda.driver``): see driver.py."""

VERSION = (2021, 1)
VERSION_TEXT = "2021.1"
