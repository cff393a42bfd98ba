"""Promotion wing: which trial wins (selection), may it replace the champion (gates), the registry, the champion."""
