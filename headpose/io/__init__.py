"""Files on disk: atomic outputs, the one reader of text files (:mod:`headpose.io.text`), image
headers, sample lists, and the process pool the data stages share."""
