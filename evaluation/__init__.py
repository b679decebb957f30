"""Model evaluation: DeLong AUC inference, classification metrics and operating points."""
