"""Microtheories: trees and datasets, generators, knowledge-store population, distillation."""
