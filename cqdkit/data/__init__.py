"""Datasets: readers for CUB-200-2011, Stanford Cars, image folders and the embedded synthetic set."""
