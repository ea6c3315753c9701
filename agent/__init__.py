"""edgeagent: an edge-AI deployment agent for Jetson, Raspberry Pi and x86 Linux."""

__version__ = "0.1.0"
