/* demo.c: fomap's main job, step by step (placeholder). */
#include <stdio.h>
int main(void) { return 0; }
