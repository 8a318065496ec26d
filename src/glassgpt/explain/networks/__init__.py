"""The small neural networks of the explanations, small enough to see every neuron, with
their drawings (`draw`).

- `symbols`: the 3x3 symbol recogniser (9 pixels -> tanh -> sigmoid -> 4 softmax outputs), with a hand-written backward pass in numpy that trains it.
- `regions`: a network that says which of three regions of the plane a point is in, its uncertainty near the boundaries, and a sweep showing that larger networks do better.
"""
