"""The medical logic: clinical rules as versioned data, scores and indices, personal baselines."""
