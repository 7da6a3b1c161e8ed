"""The two reference classifiers. Both take raw uint8 images and scale them themselves,
so a saved model needs no preprocessing code."""

import keras
from keras import layers


def cnn(num_classes=10, input_shape=(28, 28), filters=(32, 64), kernel_size=3, dense_units=128):
    """Conv(f0, k, same, relu), MaxPool 2, Conv(f1, ...), MaxPool 2, Flatten, Dense, softmax.
    `input_shape`: (H, W) for one channel, or (H, W, C)."""
    inputs = keras.Input(tuple(input_shape), dtype="uint8", name="image")
    x = layers.Rescaling(1 / 255.0)(inputs)
    if len(input_shape) == 2:
        x = layers.Reshape((*input_shape, 1))(x)
    for f in filters:
        x = layers.Conv2D(f, kernel_size, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn")


def mlp(num_classes=10, input_shape=(28, 28), hidden_units=(300, 100)):
    """Flatten - Dense(h, relu) for each h - Dense softmax."""
    inputs = keras.Input(tuple(input_shape), dtype="uint8", name="image")
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.Flatten()(x)
    for units in hidden_units:
        x = layers.Dense(units, activation="relu")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mlp")
