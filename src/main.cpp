#include <cstdio>
int main() { std::puts("temper"); return 0; }
