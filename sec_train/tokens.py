"""The text SeC's LVLM reads and writes: InternVL 2.5's special tokens, `[SEG]`, and SeC's
stage-2 questions and answers.

The lowest module of the package: the tokenizers (`sec_train.model.tokenizer`, whose toy one
trains on these texts) and the prompt builder (`sec_train.data.prompts`) both import it.
"""

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
SEG_TOKEN = "[SEG]"
SPECIAL_TOKENS = [END_OF_TEXT, IM_START, IM_END, IMG_START, IMG_END, IMG_CONTEXT, SEG_TOKEN]

QUESTIONS = (
    "Please segment the object in the last frame based on the object labeled in the first several images.",
    "Can you segment the object in the last frame that is outlined in the earlier images?",
    "Segment the outlined object of the reference frames in the final frame.",
    "Find the object marked in green in the previous frames and segment it in the last image.",
    "Which object in the last frame matches the labeled object? Please give its segmentation mask.",
    "Track the highlighted object from the first images and segment it in the last frame.",
)
ANSWERS = (
    "It is [SEG].",
    "Sure, it is [SEG].",
    "Sure, [SEG].",
    "The segmentation result is [SEG].",
    "[SEG].",
)
# What inference asks (SeC-4B), the first of each list.
INFERENCE_QUESTION, INFERENCE_ANSWER = QUESTIONS[0], ANSWERS[0]
