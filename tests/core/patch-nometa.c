/* A shared object without ulp metadata. */
int f(int x) { return x; }
