"""The teaching side: each idea of the explanations of ChatGPT as something to run and see.

- `look/`: inside a trained GPT (the forward-pass trace, the views, their text and drawings);
- `ngram` + `ngram_draw`: counting models of letters, pairs, n-grams and words;
- `networks/`: the small neural networks (3x3 symbols, three regions) and their drawings.
"""
