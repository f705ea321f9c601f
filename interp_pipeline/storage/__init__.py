"""What goes to disk and how, below everything that stores something.

cache_codecs (how a stage's outputs are written and read, by type; other packages register
theirs), cache_keys (a stage result's key, library versions included), atomic_dirs (directories
that appear whole or not at all), checkpoint_files (reading a checkpoint's files), locks (file
locks between processes).
"""
