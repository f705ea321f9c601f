"""Toy Models of Superposition (Elhage et al. 2022): the toy model, its training, and its geometry."""
