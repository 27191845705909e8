"""convolab: build, explain, train, evaluate, see inside and compare convolutional image classifiers."""
__version__ = "0.1.0"
