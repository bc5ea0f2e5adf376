"""Every picture helper: stored arrays as pictures, generated outputs drawn by plugin decoders, grids."""
