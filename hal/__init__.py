"""dicombox hardware abstraction: burners, removable media, printers, the front panel.

Each device sits behind a small interface with a simulator that does the real work with
files. Each family has a registry of its drivers by name (registry.py), which plugins
add to. This package imports nothing of dicombox but its own modules.
"""
