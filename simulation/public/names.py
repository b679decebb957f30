"""The public datasets ``axilla-simulate prepare --dataset NAME=PATH`` knows (``simulation/public/adapters.py`` reads them)."""

from __future__ import annotations

DATASET_NAMES = ("busi", "bus-bra", "breast-lesions-usg", "udiat-b", "bus-uclm", "bus-uc", "qamebi", "breastmnist", "bcnb")
