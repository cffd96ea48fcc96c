"""What a grid's cells are: the grid file checked against every registry, and each cell's identity."""
