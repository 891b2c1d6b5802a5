"""The language-model pipeline (`lm`): a recurrent language model that continues a prompt."""
