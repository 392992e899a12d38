"""Offline work no worker loads: the UCI data set replayed as events, training and evaluation of the
intent model, the persona report."""
