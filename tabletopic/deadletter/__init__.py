"""The dead-letter path: records that cannot become rows, kept with their reason."""
