"""Public breast datasets: one adapter per dataset, partitioners into sites, and the site-folder writer."""
