"""samplers: SG-MCMC on BlackJAX, spin and Gibbs samplers for energy models.

This package never imports ``bayesnn``.
"""
