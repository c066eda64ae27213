"""Files on disk, in no dataset's layout: atomic outputs, the one reader of text files
(:mod:`headpose.io.text`), image headers and decoding, sample list files, ``.npz`` arrays, and the
process pool the data stages share. A dataset's own files are read by its format
(:mod:`headpose.datasets`)."""
