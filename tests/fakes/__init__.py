"""Fake modules for hardware CI lacks (TensorRT 8.x / 10.x, pycuda), put on sys.path by tests."""
