"""What the training and evaluation loaders read: HopeNet face crops and the prepared-crop
cache with the torch datasets built on it."""
