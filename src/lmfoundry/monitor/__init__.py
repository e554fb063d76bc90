"""Drift monitoring of captured traffic: compare a reference window with a current one (`lmf monitor`)."""
