"""The vocabulary everything else speaks, torch-free: errors, crash points, checked values, confined files, a plug-in's code hash, the settings types, the evaluation protocol."""
