"""heals"""
