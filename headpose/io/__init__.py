"""Files on disk, in no dataset's layout: atomic outputs, image headers and decoding, sample
list files, and the process pool the data stages share. A dataset's own files are read by its
format (:mod:`headpose.datasets`)."""
