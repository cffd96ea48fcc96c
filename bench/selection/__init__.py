"""What a selection reads and how stable it is: published scoring runs, selection stability."""
