"""Files on disk: atomic outputs, the 300W_LP/AFLW2000 sample format and sample lists, and
the process pool the data stages share."""
