"""The synthetic datasets: procedural 3D heads, the scenes they are rendered into, the pose
distributions and the writing of 300W_LP-like and AFLW2000-like sets in the real formats."""
